"""`wildtrain predict`: what a user points it at (files, folders, archives, lists; GeoTIFFs) and what it writes."""
