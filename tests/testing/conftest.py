"""flowport-testing's own tests run pytest sessions in temp dirs, as a user's project would."""

pytest_plugins = ["pytester"]
