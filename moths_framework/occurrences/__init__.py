"""A night's answer as ecologists report it: individuals per species per night
(``occurrences.csv``, from ``tracks.csv``) and a Darwin Core Archive for GBIF. No torch."""
