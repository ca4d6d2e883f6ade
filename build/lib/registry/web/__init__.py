"""网页与接口 Web pages and JSON API."""
