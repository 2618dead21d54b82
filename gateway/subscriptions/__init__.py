"""Topic-based Subscriptions (R5 backport on R4) for the Da Vinci ATR list-change topic: notification
Bundles and the sending thread. What a Subscription must say (``gateway/fhir/subscription_topic.py``) and
who may subscribe (``gateway/auth/subscription_access.py``) are kernel modules, since every write and
``$validate`` check them."""
