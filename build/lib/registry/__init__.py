"""精防 Jingfang registry: patients with severe mental disorders, their follow-ups and teams."""
