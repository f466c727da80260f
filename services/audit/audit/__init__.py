"""The audit service: Consumes custody and registry events, flags custody breaks and high-risk origins."""
