// tokenizer.json through @huggingface/tokenizers, plus the guard that keeps user text from
// smuggling special tokens into the prompt.
import { readFile } from 'node:fs/promises';
import { Tokenizer } from '@huggingface/tokenizers';
import { BundleError } from './errors.js';
import type { ArmorManifest } from './manifest.js';

interface TokenizerJson {
  added_tokens?: { id: number; content: string; special?: boolean }[];
  model?: { type?: string };
}

export class ArmorTokenizer {
  private readonly tokenizer: Tokenizer;
  private readonly specialLiterals: string[];
  private readonly specialIds: Set<number>;
  private readonly literals: Map<number, string>;

  private constructor(tokenizer: Tokenizer, added: { id: number; content: string }[]) {
    this.tokenizer = tokenizer;
    this.specialLiterals = added.map((t) => t.content);
    this.specialIds = new Set(added.map((t) => t.id));
    this.literals = new Map(added.map((t) => [t.id, t.content]));
  }

  static async load(file: string, manifest: ArmorManifest): Promise<ArmorTokenizer> {
    let json: TokenizerJson;
    try {
      json = JSON.parse(await readFile(file, 'utf8')) as TokenizerJson;
    } catch (err) {
      throw new BundleError('tokenizer_invalid', `tokenizer.json cannot be read: ${(err as Error).message}`, { file: 'tokenizer.json' });
    }
    const added = json.added_tokens ?? [];
    const byId = new Map(added.map((t) => [t.id, t.content]));
    const { eos, ...single } = manifest.tokens;
    for (const [name, id] of [...Object.entries(single), ...eos.map((id, i) => [`eos[${i}]`, id] as const)]) {
      if (!byId.has(id)) {
        throw new BundleError('tokenizer_invalid', `tokenizer.json has no added token with id ${id} (tokens.${name} in armor.json)`, {
          file: 'tokenizer.json',
          field: `tokens.${name}`,
        });
      }
    }
    const tokenizer = new Tokenizer(json, { clean_up_tokenization_spaces: false });
    return new ArmorTokenizer(tokenizer, added);
  }

  /**
   * No special tokens added; added-token literals in the text become their ids, which is what a
   * rendered chat template needs. User text never holds one (findSpecialLiteral refuses it first).
   */
  encode(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  /** An added token's text (e.g. "<|vision_start|>"). */
  literal(id: number): string {
    const text = this.literals.get(id);
    if (text === undefined) throw new RangeError(`no added token with id ${id}`);
    return text;
  }

  /** Decodes generated ids, dropping special tokens. */
  decode(ids: readonly number[]): string {
    const plain = ids.filter((id) => !this.specialIds.has(id));
    // tokenizers.js throws on an empty list; an empty explanation is a valid answer.
    if (plain.length === 0) return '';
    return this.tokenizer.decode(
      plain,
      { skip_special_tokens: true, clean_up_tokenization_spaces: false },
    );
  }

  /** The text with every special-token literal removed (until none is left: removing one may join another). */
  withoutSpecialLiterals(text: string): string {
    let out = text;
    for (let found = this.findSpecialLiteral(out); found !== undefined; found = this.findSpecialLiteral(out)) out = out.split(found).join('');
    return out;
  }

  /** The first special-token literal found in the text, if any. */
  findSpecialLiteral(text: string): string | undefined {
    return this.specialLiterals.find((literal) => text.includes(literal));
  }
}
