"""The custody service: mineral lots and their custody operations, genealogy and traces."""
