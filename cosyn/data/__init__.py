"""Datasets: readers for every supported format, conditioning targets, torch Dataset."""
