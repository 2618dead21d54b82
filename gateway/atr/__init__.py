"""Da Vinci Member Attribution (ATR 2.1): attribution list Groups, their rules and operations."""
