"""Topic-based Subscriptions (R5 backport on R4) for the Da Vinci ATR list-change topic."""
