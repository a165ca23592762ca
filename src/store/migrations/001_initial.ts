// Episodes, their uploaded media, and the webhook outbox.
import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../types.js';

export function initial(dialect: Dialect): Migration {
  const bytes = dialect === 'postgres' ? 'bytea' : 'blob';
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('episodes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('cell_id', 'text')
        .addColumn('task', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('mode', 'text', (c) => c.notNull())
        .addColumn('media_sha256', 'text', (c) => c.notNull())
        .addColumn('media_kind', 'text', (c) => c.notNull())
        .addColumn('options', 'text', (c) => c.notNull())
        .addColumn('result', 'text')
        .addColumn('label', 'text')
        .addColumn('error_code', 'text')
        .addColumn('error_message', 'text')
        .addColumn('error_status', 'integer')
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('lease_owner', 'text')
        .addColumn('lease_until', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addColumn('started_at', 'bigint')
        .addColumn('finished_at', 'bigint')
        .execute();
      // Listing is newest first with (created_at, id) as the cursor; claims scan by status.
      await db.schema.createIndex('episodes_created').on('episodes').columns(['created_at', 'id']).execute();
      await db.schema.createIndex('episodes_status_created').on('episodes').columns(['status', 'created_at']).execute();
      await db.schema.createIndex('episodes_cell_created').on('episodes').columns(['cell_id', 'created_at']).execute();

      await db.schema
        .createTable('episode_media')
        .addColumn('episode_id', 'text', (c) => c.notNull().references('episodes.id').onDelete('cascade'))
        .addColumn('idx', 'integer', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('bytes', sql.raw(bytes), (c) => c.notNull())
        .addPrimaryKeyConstraint('episode_media_pk', ['episode_id', 'idx'])
        .execute();

      await db.schema
        .createTable('webhook_messages')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('episode_id', 'text', (c) => c.notNull())
        .addColumn('event_type', 'text', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addUniqueConstraint('webhook_messages_episode_event', ['episode_id', 'event_type'])
        .execute();

      await db.schema
        .createTable('webhook_deliveries')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('message_id', 'text', (c) => c.notNull().references('webhook_messages.id').onDelete('cascade'))
        .addColumn('endpoint_id', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
        .addColumn('lease_owner', 'text')
        .addColumn('lease_until', 'bigint')
        .addColumn('last_status_code', 'integer')
        .addColumn('last_error', 'text')
        .addColumn('last_attempt_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addUniqueConstraint('webhook_deliveries_message_endpoint', ['message_id', 'endpoint_id'])
        .execute();
      await db.schema.createIndex('webhook_deliveries_due').on('webhook_deliveries').columns(['status', 'next_attempt_at']).execute();
      await db.schema.createIndex('webhook_deliveries_created').on('webhook_deliveries').columns(['created_at', 'id']).execute();

      await db.schema
        .createTable('webhook_endpoint_state')
        .addColumn('endpoint_id', 'text', (c) => c.primaryKey())
        .addColumn('disabled_at', 'bigint')
        .addColumn('disabled_reason', 'text')
        .execute();
    },
  };
}
