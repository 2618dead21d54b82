"""The console for payer and provider staff at ``/console/``: measure dashboard, gap worklist and attribution
lists, rendered on the server as plain HTML. It signs its user in through the gateway's SMART authorization
server (authlib as the OAuth client, PKCE) and reads and writes only through the FHIR API with that user's
token, in process, so every check the API makes applies to what the console shows (docs/apps.md)."""
