"""Media units on usage records: images, audio milliseconds, characters (nullable)

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("images", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("audio_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("characters", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("characters")
        batch_op.drop_column("audio_ms")
        batch_op.drop_column("images")
