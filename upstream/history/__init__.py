"""The mirror's history: record changes, timelines, drift, the sync base and refresh."""
