"""Names and defaults every layer shares, importable without torch (so `joyq --help`,
the store and the window start fast)."""

APP_NAME = "joyq-studio"
JOYQUALITY_REPO = "fancyfeast/joyquality-siglip2-so400m-512-16-o8eg1n4c"
BASE_REPO = "google/siglip2-so400m-patch16-512"
DEFAULT_MODEL = JOYQUALITY_REPO
