"""Network kernel: the rules every outbound call of the gateway follows (`egress.py`)."""
