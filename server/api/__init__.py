"""The HTTP views of the JSON API and simple pages, and the helpers they share."""
