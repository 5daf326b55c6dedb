"""callqa: streaming contact-center quality monitoring."""
