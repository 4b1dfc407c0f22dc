"""placeholder"""
import click

command = click.Command("dev")
