"""Views of one `Analysis`: each renderer turns it into text for people or scripts."""
