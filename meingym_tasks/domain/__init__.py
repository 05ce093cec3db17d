"""MeinGym's data and rules: models, scoring, the set-based updates, mail, demo data. No queue, no web."""
