"""placeholder"""
import click

command = click.Command("link")
