"""ML on Metaflow: the platform's models as flows, tracked, scheduled and served."""
