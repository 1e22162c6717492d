// Reading card files and validating their rows (docs/design.md §7).

export { containsCardNumber, findCardNumbers, hasCardNumberWindow, luhnValid, maskCardNumbers, maskPath } from './pan.js';
export {
  DELIMITERS,
  KNOWN_COLUMNS,
  delimiterName,
  detectDelimiter,
  matchColumn,
  matchHeader,
  normalizeColumnName,
  type Delimiter,
  type DelimiterOption,
  type HeaderMap,
  type KnownColumn,
} from './header.js';
export { PAN_REJECT, isBlankRecord, isIsoDateTime, makeRowContext, validateRow, type RowContext } from './validate.js';
export {
  DEFAULT_BATCH_SIZE,
  HEAD_BYTES,
  MAX_RAW_LENGTH,
  MAX_RECORD_SIZE,
  fileSha256,
  inspectCardFile,
  rawForReject,
  readCardFile,
  readCsvRecords,
  type CardFileEntry,
  type CardFileInfo,
  type CsvRecord,
  type InspectOptions,
  type ReadOptions,
} from './read.js';
