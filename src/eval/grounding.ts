// Does an explanation name the right item, its colour, and the right failure? Word rules over
// the vocabulary of models/data/generate_episodes.py (8 colours, 4 shapes, the templates of
// the 7 outcomes); models/tooling/report.py reads their results from the eval reports.
// Every reference explanation of a generated set satisfies them (reported as
// `mode_rule_agreement`), so a template change that breaks a rule shows in the report.

export const COLOURS = ['red', 'blue', 'green', 'yellow', 'orange', 'purple', 'white', 'black'] as const;
export const SHAPES = ['box', 'cylinder', 'bag', 'wedge'] as const;

/** First match wins, in this order (a collision that then drops is a collision). */
export const MODE_RULES: ReadonlyArray<readonly [string, RegExp]> = [
  ['damaged_item', /\b(tore|torn|ripped|damaged)\b/],
  ['multi_pick', /two items|double pick|second item|\bboth\b/],
  ['collision_knockout', /\b(hit|collided)\b/],
  ['drop_in_transit', /\b(halfway|midway)\b/],
  ['placed_outside', /outside|next to the destination tote instead/],
  ['grasp_miss', /missed|rose without|rose empty|lifted nothing|never left|stayed in|still in/],
  ['success', /inside the destination|succeeded/],
];

const RULED = new Set(MODE_RULES.map(([mode]) => mode));

/** Whether the rules can tell this mode from an explanation. */
export function ruledMode(mode: string | undefined): mode is string {
  return mode !== undefined && RULED.has(mode);
}

/** The outcome an explanation names, if any. */
export function namedMode(text: string): string | undefined {
  const t = text.toLowerCase();
  return MODE_RULES.find(([, rule]) => rule.test(t))?.[0];
}

const ITEM = new RegExp(`\\b(${COLOURS.join('|')}) (${SHAPES.join('|')})\\b`);

/** The item a task names ("purple cylinder"), for sets whose manifest has no `item`. */
export function itemOfTask(task: string): string | undefined {
  return ITEM.exec(task.toLowerCase())?.[0];
}

const words = (phrase: string) => new RegExp(`\\b${phrase.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`);

export function namesItem(explanation: string, item: string): boolean {
  return words(item.toLowerCase()).test(explanation.toLowerCase());
}

export function namesColour(explanation: string, item: string): boolean {
  const colour = item.toLowerCase().split(' ')[0];
  return words(colour).test(explanation.toLowerCase());
}

export interface Grounding {
  /** Explanations that name the episode's item ("purple cylinder"), over episodes whose item is known. */
  item_named: number | null;
  /** ... that name its colour. */
  colour_named: number | null;
  /** Explanations of failed picks that name the failure mode, over failed picks whose mode is known. */
  failure_mode_named: number | null;
}

interface Graded {
  explanation: string;
  item?: string;
  failureMode?: string;
}

const share = (hits: boolean[]) => (hits.length ? hits.filter(Boolean).length / hits.length : null);

export function grounding(answers: Graded[]): Grounding {
  const withItem = answers.filter((a): a is Graded & { item: string } => a.item !== undefined);
  // Only the modes the rules know (an operator may name others, e.g. wrong_item).
  const failed = answers.filter((a) => a.failureMode !== undefined && a.failureMode !== 'success' && RULED.has(a.failureMode));
  return {
    item_named: share(withItem.map((a) => namesItem(a.explanation, a.item))),
    colour_named: share(withItem.map((a) => namesColour(a.explanation, a.item))),
    failure_mode_named: share(failed.map((a) => namedMode(a.explanation) === a.failureMode)),
  };
}
