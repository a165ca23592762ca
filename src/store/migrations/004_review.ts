// needs_review on the episode row, so the list can filter on it with an index in the list's order.
import type { Kysely, Migration } from 'kysely';

export function review(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      // 1: the answer should be checked by an operator; 0: not; null: no answer (yet), or stored before this column.
      await db.schema.alterTable('episodes').addColumn('needs_review', 'integer').execute();
      await db.schema.createIndex('episodes_needs_review_created').on('episodes').columns(['needs_review', 'created_at', 'id']).execute();
    },
  };
}
