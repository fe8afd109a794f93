"""A two-page docs corpus about a made-up daemon, for bundle and server tests (facts no model knows)."""

DOCS = {
    "install.md": "# Installing Widgetd\n\nWidgetd installs with `pip install widgetd`.\n\n"
                  "## Starting the daemon\n\nRun `widgetd start --port 7070` to start the daemon. "
                  "The default port is 7070. Stop it with `widgetd stop`.\n",
    "config.md": "# Configuring Widgetd\n\nThe configuration file lives at `~/.widgetd/config.yaml`. "
                 "Set `cache_size` to the memory cache size in megabytes; the default is 256.\n",
}
