"""The data layer that api/ and worker/ share: settings, the database, SQL models and their state transitions, and
where artifacts live. It imports neither api/ nor worker/."""
