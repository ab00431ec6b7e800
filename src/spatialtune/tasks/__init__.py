"""What each task asks and how its answer is written: prompts, instructions and answer formats.

Builders write training records with these and benchmarks write evaluation prompts with them, so a model is trained
on exactly the question and answer format it is evaluated on. Reading answers back is `spatialtune.answers`.
"""
