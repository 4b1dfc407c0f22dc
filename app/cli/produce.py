"""placeholder"""
import click

command = click.Command("produce")
