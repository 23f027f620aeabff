"""The three patterns of SPEC section 4: id -> ActionType."""

PATTERNS = {"PatId1": "UPGRADE", "PatId2": "CHILD", "PatId3": "DEI-NEEDED"}
