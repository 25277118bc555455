"""Request and response schemas of the platform API, with OpenAPI examples."""
