"""CLP (Li & Shan, IEEE TIP 2023) as a third pretraining method: person-independent AU representations
from unlabelled face videos. No code of the paper is public and only its abstract was at hand, so the
losses here are this project's reconstruction of what the abstract describes, each choice documented
where it is made; they are not presented as the paper's."""
