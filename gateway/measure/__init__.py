"""Measure calculation: Measure + Libraries + subject data -> MeasureReport (Quality Measure IG rules)."""
