// Token layout of the prompt (models/README.md "Tokens and prompt layout") and its M-RoPE
// positions (Qwen2.5-VL get_rope_index).
import { Template } from '@huggingface/jinja';
import { BundleError } from './errors.js';
import type { ArmorManifest } from './manifest.js';
import type { VisionKind } from './preprocess.js';
import type { ArmorTokenizer } from './tokenizer.js';

/** Position ids on the three M-RoPE axes (temporal, height, width). */
export type Positions3 = [number[], number[], number[]];

export interface VisionInput {
  kind: VisionKind;
  /** [grid_t, grid_h, grid_w] in patches, before the merge. */
  grid: [number, number, number];
  /** Video: temporal_patch_size / sample_fps; image: 0. */
  secondPerGridT: number;
}

export interface Prefix {
  ids: number[];
  positions: Positions3;
  /** Index in `ids` of the first vision placeholder token. */
  visionOffset: number;
  visionTokens: number;
  /** The position the first suffix token takes. */
  nextPosition: number;
  kind: VisionKind;
}

function fill(template: string, values: Record<string, string>): string {
  let out = template;
  for (const [key, value] of Object.entries(values)) out = out.split(`{${key}}`).join(value);
  return out;
}

class PositionedIds {
  readonly ids: number[] = [];
  readonly positions: Positions3 = [[], [], []];
  next = 0;

  text(ids: readonly number[]): this {
    for (const id of ids) {
      this.ids.push(id);
      for (const axis of this.positions) axis.push(this.next);
      this.next++;
    }
    return this;
  }

  vision(padId: number, vision: VisionInput, merge: number, tokensPerSecond: number): this {
    const [gt, gh, gw] = vision.grid;
    const h = gh / merge;
    const w = gw / merge;
    const start = this.next;
    let max = start;
    for (let t = 0; t < gt; t++) {
      const tPos = start + Math.floor(t * vision.secondPerGridT * tokensPerSecond);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          this.ids.push(padId);
          this.positions[0].push(tPos);
          this.positions[1].push(start + y);
          this.positions[2].push(start + x);
          max = Math.max(max, tPos, start + y, start + x);
        }
      }
    }
    this.next = max + 1;
    return this;
  }
}

/**
 * prompt.format chat_template: the model's own chat template renders the conversation (a
 * system turn when prompt.system is set, the user turn with the video or image and ARMOR's
 * text, the assistant opening), and the text on either side of the vision block is tokenized
 * whole, as transformers' processor tokenizes it. Special tokens split a text before any
 * merge, so the text before the vision block (the prefix) is the same ids in every round.
 */
class ChatTemplatePrompt {
  private readonly template: Template;
  private readonly manifest: ArmorManifest;
  private readonly tokenizer: ArmorTokenizer;
  private readonly literal: (id: number) => string;

  constructor(manifest: ArmorManifest, tokenizer: ArmorTokenizer) {
    this.manifest = manifest;
    this.tokenizer = tokenizer;
    try {
      this.template = new Template(manifest.prompt.chat_template ?? '');
    } catch (err) {
      throw new BundleError('invalid_manifest', `armor.json: field prompt.chat_template cannot be parsed: ${(err as Error).message}`, { file: 'armor.json', field: 'prompt.chat_template' });
    }
    this.literal = (id) => tokenizer.literal(id);
  }

  /** The rendered conversation, cut around its one vision block. */
  split(kind: VisionKind, userText: string): { head: string; tail: string } {
    const p = this.manifest.prompt;
    const t = this.manifest.tokens;
    const messages = [
      ...(p.system ? [{ role: 'system', content: p.system }] : []),
      { role: 'user', content: [{ type: kind }, { type: 'text', text: userText }] },
    ];
    const text = this.template.render({ messages, add_generation_prompt: true });
    const block = this.literal(t.vision_start) + this.literal(kind === 'video' ? t.video_pad : t.image_pad) + this.literal(t.vision_end);
    const at = text.indexOf(block);
    if (at < 0 || text.indexOf(block, at + 1) >= 0) {
      throw new BundleError('invalid_manifest', `armor.json: prompt.chat_template must render exactly one ${block} for a ${kind}`, { file: 'armor.json', field: 'prompt.chat_template' });
    }
    return { head: text.slice(0, at), tail: text.slice(at + block.length) };
  }

  userText(task: string, round: number, history?: { failure: boolean; explanationIds: readonly number[] }): string {
    const { prompt, labels } = this.manifest;
    let text = fill(prompt.task, { task });
    if (round > 0 && history) {
      // As a processor sees it: the previous answer as text in the turn, tokenized with it. Text
      // the model spelled like a special token stays text: it must not close the turn or add a
      // vision block.
      const explanation = this.tokenizer.withoutSpecialLiterals(this.tokenizer.decode(history.explanationIds));
      text += fill(prompt.history, { label: labels.names[history.failure ? 1 : 0], explanation });
    }
    return text + fill(prompt.round, { round: String(round) });
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text);
  }
}

export class PromptBuilder {
  private readonly manifest: ArmorManifest;
  private readonly tokenizer: ArmorTokenizer;
  private readonly assistantOpen: number[];
  private readonly historyParts: [string, string];
  private readonly chat: ChatTemplatePrompt | undefined;

  constructor(manifest: ArmorManifest, tokenizer: ArmorTokenizer) {
    this.manifest = manifest;
    this.tokenizer = tokenizer;
    const t = manifest.tokens;
    this.assistantOpen = [t.im_end, ...tokenizer.encode('\n'), t.im_start, ...tokenizer.encode('assistant\n')];
    const [before, ...after] = manifest.prompt.history.split('{explanation}');
    this.historyParts = [before ?? '', after.join('{explanation}')];
    this.chat = manifest.prompt.format === 'chat_template' ? new ChatTemplatePrompt(manifest, tokenizer) : undefined;
  }

  visionTokenCount(grid: [number, number, number]): number {
    const m = this.manifest.preprocessing.merge_size;
    return (grid[0] * grid[1] * grid[2]) / (m * m);
  }

  prefix(task: string, vision: VisionInput): Prefix {
    const { tokens: t, prompt, preprocessing: p } = this.manifest;
    const enc = (s: string) => this.tokenizer.encode(s);
    const padId = vision.kind === 'video' ? t.video_pad : t.image_pad;
    if (this.chat) {
      // Everything before the vision block; the task is in the suffix, tokenized with the turn.
      const { head } = this.chat.split(vision.kind, this.chat.userText(task, 0));
      const b = new PositionedIds().text([...this.chat.encode(head), t.vision_start]);
      const visionOffset = b.ids.length;
      b.vision(padId, vision, p.merge_size, p.tokens_per_second);
      const visionTokens = b.ids.length - visionOffset;
      b.text([t.vision_end]);
      return { ids: b.ids, positions: b.positions, visionOffset, visionTokens, nextPosition: b.next, kind: vision.kind };
    }
    const b = new PositionedIds()
      .text([t.im_start, ...enc(`system\n${prompt.system}`), t.im_end, ...enc('\n'), t.im_start, ...enc('user\n'), t.vision_start]);
    const visionOffset = b.ids.length;
    b.vision(padId, vision, p.merge_size, p.tokens_per_second);
    const visionTokens = b.ids.length - visionOffset;
    b.text([t.vision_end, ...enc(fill(prompt.task, { task }))]);
    return { ids: b.ids, positions: b.positions, visionOffset, visionTokens, nextPosition: b.next, kind: vision.kind };
  }

  /**
   * suffix_t: the previous round's answer (t > 0), the round instruction, the assistant turn.
   * With a chat template, the rest of the user turn after the vision block (task included),
   * tokenized whole; `task` and `kind` are the prefix's.
   */
  suffix(round: number, history: { failure: boolean; explanationIds: readonly number[] } | undefined, task: string, kind: VisionKind): number[] {
    if (this.chat) {
      const { tail } = this.chat.split(kind, this.chat.userText(task, round, history));
      return this.chat.encode(tail);
    }
    const { prompt, labels } = this.manifest;
    const ids: number[] = [];
    if (round > 0 && history) {
      const label = labels.names[history.failure ? 1 : 0];
      ids.push(...this.tokenizer.encode(fill(this.historyParts[0], { label })));
      ids.push(...history.explanationIds);
      ids.push(...this.tokenizer.encode(fill(this.historyParts[1], { label })));
    }
    ids.push(...this.tokenizer.encode(fill(prompt.round, { round: String(round) })));
    ids.push(...this.assistantOpen);
    return ids;
  }
}

/**
 * M-RoPE position of the k-th real token after the prefix (suffix or generated): text tokens
 * continue from the prefix's next position, the same on all three axes; left padding inside
 * a suffix takes no position.
 */
export function textPosition(prefix: Pick<Prefix, 'nextPosition'>, k: number): number {
  return prefix.nextPosition + k;
}
