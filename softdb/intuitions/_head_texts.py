"""The small real text set the real-head experiments read: 30 short English sentences.

Written for softdb (public domain). Plain everyday sentences of 6 to 16 words, with pronouns
("it", "she", "they") that point back, so a head that links a word to an earlier one has
something to find. They ship inside the package, so ``softdb intuitions`` runs installed.
"""

from __future__ import annotations

__all__ = ["HEAD_TEXTS"]

#: The sentences, in a fixed order (the experiments read them all).
HEAD_TEXTS: tuple[str, ...] = (
    "The cat sat on the mat because it was warm.",
    "She opened the window and the cold air rushed in.",
    "The river flows past the old mill and into the sea.",
    "My brother bought a new bike, but he rarely rides it.",
    "The children played in the park until the sun went down.",
    "A small boat drifted slowly across the quiet lake.",
    "The teacher asked the students to read the first chapter.",
    "He dropped the glass and it broke into many pieces.",
    "The train to the city leaves every hour from platform two.",
    "We planted tomatoes in the garden last spring.",
    "The dog barked at the mailman, who ignored it.",
    "After the storm, the streets were covered with leaves.",
    "The library closes early on Sundays and holidays.",
    "They painted the kitchen a bright shade of yellow.",
    "The old computer was slow, so she replaced it.",
    "Fresh bread smells wonderful in the early morning.",
    "The committee will announce its decision next week.",
    "A red kite flew high above the green hills.",
    "The doctor told him to drink more water and rest.",
    "Our neighbours keep bees and sell the honey at the market.",
    "The bridge was closed because the wind was too strong.",
    "Maria wrote a letter to her grandmother in Spain.",
    "The museum shows paintings from the nineteenth century.",
    "When the phone rang, nobody wanted to answer it.",
    "The baker sold all of his cakes before noon.",
    "Heavy snow fell overnight and blocked the mountain road.",
    "The students cheered when the teacher cancelled the test.",
    "A careful driver slows down near the school.",
    "The company hired ten engineers to build the new app.",
    "The moon rose over the village and lit the empty square.",
)
