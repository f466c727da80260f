"""The registry service: Participants, certifications, CAHRA reference data and credentials."""
