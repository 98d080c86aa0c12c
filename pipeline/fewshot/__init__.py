"""Few-shot AU evaluation (issue 30): how well each pretrained encoder transfers when only a few
training subjects are labelled, in the manner of Bulat et al. (ECCV 2022). Their fractions and AU
protocol are not public; the budgets here are this project's choice and are named in every output."""
