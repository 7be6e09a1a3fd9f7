"""What a trial measures beside accuracy: MACs, parameters and memory (`costs`), energy and CO2
(`emissions`), and robustness to corruptions, shifts and attacks (`robustness`)."""
