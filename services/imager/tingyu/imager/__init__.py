"""The imager: validates `docker save` tars, pushes them to the registry and keeps the image catalog."""
