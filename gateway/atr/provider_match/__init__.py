"""Da Vinci PDex Group/$provider-member-match: the Provider Access (CMS-0057-F) member match."""
