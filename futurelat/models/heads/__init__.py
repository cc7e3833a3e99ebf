"""Heads (context latents → future latents): a trunk (:mod:`.trunks`) plus an objective (:mod:`.objectives`).

The heads named in configs are ``mamba`` (:mod:`.mamba`), ``transformer`` (:mod:`.transformer`) and
``flow_dit`` (:mod:`.flow_dit`); :mod:`.composed` joins a trunk and an objective into a head.
"""
