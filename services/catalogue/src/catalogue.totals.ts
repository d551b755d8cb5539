// Running totals behind `catalogue.stats`: one row (`catalogue_totals`) that every insert,
// update and delete of the counted tables moves by the row's contribution after the change
// minus its contribution before it. Database triggers do the moving, so the totals change in
// the same transaction as the rows (a batch and its checkpoint commit or roll back together),
// on SQLite and PostgreSQL alike, and a rebuild (a replay into a fresh store) rebuilds them.
// Each contribution is written once, as an SQL expression over the row (`r.`), and spelled
// for each dialect below; stats then reads one row instead of summing every restore point.
import type { CatalogueDialect } from './catalogue-store.port.ts';

/** What a row adds to each total, as an SQL expression over the row named `r`. */
type Contributions = Readonly<Record<string, string>>;

const when = (cond: string, value = '1') => `CASE WHEN ${cond} THEN ${value} ELSE 0 END`;
const live = 'r.expired_at IS NULL';
const backupIn = (state: string) => `r.kind = 'backup' AND r.state = '${state}'`;

interface Counted {
  readonly table: string;
  /** The columns whose change can move a total (other updates fire nothing). */
  readonly columns: readonly string[];
  readonly totals: Contributions;
}

export const COUNTED: readonly Counted[] = [
  {
    table: 'restore_points',
    columns: ['expired_at', 'bytes_read', 'bytes_stored', 'damaged_at', 'last_test_status'],
    totals: {
      rp_total: '1',
      rp_live: when(live),
      bytes_read: 'r.bytes_read',
      bytes_stored: 'r.bytes_stored',
      live_bytes_read: when(live, 'r.bytes_read'),
      live_bytes_stored: when(live, 'r.bytes_stored'),
      rp_damaged: when(`${live} AND r.damaged_at IS NOT NULL`),
      rp_tested_passed: when(`${live} AND r.last_test_status = 'passed'`),
      rp_tested_failed: when(`${live} AND r.last_test_status = 'failed'`),
    },
  },
  {
    table: 'jobs',
    columns: ['kind', 'state', 'bytes_read', 'duration_ms'],
    totals: {
      jobs_requested: when(backupIn('requested')),
      jobs_running: when(backupIn('running')),
      jobs_completed: when(backupIn('completed')),
      jobs_failed: when(backupIn('failed')),
      jobs_cancelled: when(backupIn('cancelled')),
      completed_bytes_read: when(backupIn('completed'), 'COALESCE(r.bytes_read, 0)'),
      completed_duration_ms: when(backupIn('completed'), 'COALESCE(r.duration_ms, 0)'),
    },
  },
  { table: 'vms', columns: ['vm_id'], totals: { vms: '1' } },
  {
    table: 'test_restores',
    columns: ['status'],
    totals: {
      tr_running: when(`r.status = 'running'`),
      tr_passed: when(`r.status = 'passed'`),
      tr_failed: when(`r.status = 'failed'`),
      tr_refused: when(`r.status = 'refused'`),
    },
  },
];

export const TOTAL_COLUMNS: readonly string[] = COUNTED.flatMap((c) => Object.keys(c.totals));

/** The table (one row, id 1, every total 0 in an empty store); part of SCHEMA_DDL. */
export const TOTALS_TABLE_DDL = `
CREATE TABLE IF NOT EXISTS catalogue_totals (
  id INTEGER PRIMARY KEY CHECK (id = 1),
${TOTAL_COLUMNS.map((c) => `  ${c} INTEGER NOT NULL DEFAULT 0`).join(',\n')}
) STRICT;
INSERT INTO catalogue_totals (id) VALUES (1) ON CONFLICT (id) DO NOTHING;
`;

const of = (expr: string, row: 'NEW' | 'OLD') => `(${expr.replace(/\br\./g, `${row}.`)})`;

/** UPDATE catalogue_totals by what the change adds (NEW) and takes away (OLD). */
function moveTotals(c: Counted, op: 'INSERT' | 'UPDATE' | 'DELETE'): string {
  const sets = Object.entries(c.totals).map(([col, expr]) => {
    const plus = op === 'DELETE' ? '' : ` + ${of(expr, 'NEW')}`;
    const minus = op === 'INSERT' ? '' : ` - ${of(expr, 'OLD')}`;
    return `${col} = ${col}${plus}${minus}`;
  });
  return `UPDATE catalogue_totals SET ${sets.join(', ')} WHERE id = 1`;
}

/** The triggers that keep the totals, in the dialect's spelling (run after the tables exist). */
export function totalsTriggersDdl(dialect: CatalogueDialect): string {
  return COUNTED.map((c) => {
    const name = `catalogue_totals_${c.table}`;
    const events = { INSERT: 'INSERT', UPDATE: `UPDATE OF ${c.columns.join(', ')}`, DELETE: 'DELETE' } as const;
    if (dialect === 'sqlite') {
      return (['INSERT', 'UPDATE', 'DELETE'] as const).map((op) =>
        `CREATE TRIGGER IF NOT EXISTS ${name}_${op.toLowerCase()} AFTER ${events[op]} ON ${c.table} BEGIN ${moveTotals(c, op)}; END;`).join('\n');
    }
    // PostgreSQL: one row-level trigger function per table; names resolve in the schema the
    // session's search_path names, so a rebuilt schema renamed over the live one keeps working.
    return `CREATE OR REPLACE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN ${moveTotals(c, 'INSERT')};
  ELSIF TG_OP = 'UPDATE' THEN ${moveTotals(c, 'UPDATE')};
  ELSE ${moveTotals(c, 'DELETE')};
  END IF;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS ${name} ON ${c.table};
CREATE TRIGGER ${name} AFTER INSERT OR DELETE OR ${events.UPDATE} ON ${c.table} FOR EACH ROW EXECUTE FUNCTION ${name}();`;
  }).join('\n');
}
