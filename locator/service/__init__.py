"""`geoloc serve`: the locator as a web service with a page for analysts (locator.service.app)."""
