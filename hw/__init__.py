"""Amaranth generators: one ``wiring.Component`` per operator unit, built from golden configs."""
