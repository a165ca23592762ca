// Operator labels on episodes, the latest of them on the episode for filters, and the
// indexes the console's filters and the media retention sweep read.
import type { Kysely, Migration } from 'kysely';

export function labels(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('episodes').addColumn('human_label', 'text').execute();
      await db.schema
        .createTable('episode_labels')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('episode_id', 'text', (c) => c.notNull().references('episodes.id').onDelete('cascade'))
        .addColumn('label', 'text', (c) => c.notNull())
        .addColumn('failure_mode', 'text')
        .addColumn('explanation', 'text')
        .addColumn('by', 'text')
        // 1 or 0 against the model's answer; null when the episode has none (it failed).
        .addColumn('agreed', 'integer')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('episode_labels_episode').on('episode_labels').columns(['episode_id', 'created_at']).execute();
      // Each list filter's index ends in the list's order (created_at, id), so a page is read
      // in order and stops at its limit, with no sort.
      await db.schema.createIndex('episodes_label_created').on('episodes').columns(['label', 'created_at', 'id']).execute();
      await db.schema.createIndex('episodes_human_label_created').on('episodes').columns(['human_label', 'created_at', 'id']).execute();
      await db.schema.dropIndex('episodes_cell_created').execute();
      await db.schema.createIndex('episodes_cell_created').on('episodes').columns(['cell_id', 'created_at', 'id']).execute();
      await db.schema.dropIndex('episodes_status_created').execute();
      await db.schema.createIndex('episodes_status_created').on('episodes').columns(['status', 'created_at', 'id']).execute();
      await db.schema.createIndex('episodes_finished').on('episodes').columns(['finished_at']).execute();
    },
  };
}
