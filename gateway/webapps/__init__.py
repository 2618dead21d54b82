"""Browser apps the gateway serves itself under ``/apps``: the care-gaps SMART app (static files in
``care_gaps/``, its fhirclient library from npm in ``node_modules/``, installed by ``make install``) and, with
``--demo``, a demo EHR launcher page that starts it by EHR launch. The apps reach data only through the FHIR
API with the signed-in user's token, like any other SMART app."""
