"""The embedded synthetic face world.

A seeded, offline stand-in for the licensed datasets: persistent identities
(:mod:`.identity`), a face renderer driven by AU intensities (:mod:`.render`), smooth AU
sequences whose base rates depend on the subject (:mod:`.expression`), and writers that lay
the results out exactly as the real datasets ship (:mod:`.sources`, :mod:`.au_datasets`), with
the flaws real collections have (:mod:`.flaws`). Everything derives from ``synth.seed``.
"""
