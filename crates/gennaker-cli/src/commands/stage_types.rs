//! `gennaker stage-types`

use gennaker_core::StageTypeDescriptor;

use super::Context;
use crate::args::StageTypesArgs;
use crate::error::CliError;
use crate::output::{emit, table};

pub(super) async fn run(ctx: &mut Context<'_>, args: StageTypesArgs) -> Result<(), CliError> {
    let raw = ctx.client()?.get(&["stageTypes"], &[]).await?;
    let all = args.all;
    emit(
        ctx.out,
        ctx.format,
        raw,
        |types: &Vec<StageTypeDescriptor>| {
            table(
                ["TYPE", "RUNNABLE", "PROVIDERS", "ALIASES", "DESCRIPTION"],
                types
                    .iter()
                    .filter(|t| all || t.runnable)
                    .map(|t| {
                        [
                            t.stage_type.clone(),
                            if t.runnable { "yes" } else { "no" }.to_owned(),
                            t.providers.join(","),
                            t.aliases.join(","),
                            t.description.clone(),
                        ]
                    })
                    .collect(),
            )
        },
    )
}
