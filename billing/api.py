def register_routes(router) -> None:
    """Routes of this app's REST API (none yet)."""
