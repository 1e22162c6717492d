#!/usr/bin/env node
// Operations entry: retry what the most recent batch left undone. Extra flags pass through
// (e.g. --config, --include-permanent, --dry-run).
import { hideBin } from 'yargs/helpers';
import { cli } from '../src/cli/cli.js';

await cli(['rerun', '--last', ...hideBin(process.argv)]);
