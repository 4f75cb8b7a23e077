"""Vision pieces shared by the vision-language experiments (captioning, VQA).

Experiments never import each other; what two of them need lives here:
`scenes` (the procedural scene generator with its captions and the checker that
proves them true) and `cnn` (the Flax image encoder).
"""
