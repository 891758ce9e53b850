"""Data: sources of labelled images, preparation of an image folder, data modules."""
