//! The `driftwatch` command line. Maps errors to exit codes: 0 no drift (or success),
//! 1 drift detected, 2 usage, configuration or input error.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use driftwatch::profile::Baseline;

use driftwatch::plan::{BuildOptions, FeatureSelection};

use driftwatch::baseline::Format;
use driftwatch::check;
use driftwatch::config;
use driftwatch::plan::Plan;
use driftwatch::plan::{PerformanceSpec, Task};
use driftwatch::profile::FeatureKind;
use driftwatch::stats::{KsMethod, TestChoice, TestKind};
use driftwatch::validate;

#[derive(Parser)]
#[command(
    name = "driftwatch",
    version,
    about = "Watches ML models in production for data drift, data-quality problems and performance loss.",
    long_about = "Watches ML models in production for data drift, data-quality problems and performance loss.\n\n\
                  Exit codes: 0 success / no drift, 1 drift detected (check), 2 usage, configuration or input error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare a batch of data with a reference and report drift (exit 0 no drift, 1 drift, 2 error).
    ///
    /// Zero-config: `driftwatch check --reference train.parquet --current today.parquet`.
    /// Configured: `driftwatch check --config agent.toml --model credit-risk --current today.parquet`.
    Check(CheckArgs),
    /// Check a configuration file and report every problem at once as file:line:col (exit 0 valid, 2 invalid).
    Validate {
        /// The agent configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Only check the file itself; do not open the baselines it names.
        #[arg(long)]
        no_baselines: bool,
    },
    /// Baseline artefacts: precomputed reference profiles, so the agent never needs the training set.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Run the agent: consume events (Kafka or a replay), window them, test every closed window
    /// against the baseline and serve /metrics, /healthz, /readyz, /api/v1/status and
    /// /report/MODEL (the last window as an HTML report).
    ///
    /// SIGHUP, or a change in the configuration's files, reloads the configuration: a valid one
    /// is applied without a restart, an invalid one is logged and the running one kept.
    /// Stops on SIGTERM or SIGINT: the source stops, open windows are evaluated, offsets committed.
    /// Logs go to stderr; set DRIFTWATCH_LOG (e.g. "debug") for more.
    Run {
        /// The agent configuration file (needs a [source] table).
        #[arg(long)]
        config: PathBuf,
        /// HTTP address, replacing [agent] listen.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// The whole pipeline on built-in data, no external service: a generated credit-risk stream
    /// that drifts part-way, /metrics on 127.0.0.1:9464, one summary line per closed window,
    /// alert emails written as .eml files to a local outbox.
    ///
    /// Stops on Ctrl-C or after --duration.
    Demo {
        /// HTTP address for /metrics, /healthz, /readyz and /api/v1/status.
        #[arg(long, default_value = config::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Stop after this long, e.g. "30s" or "2m" (default: run until Ctrl-C).
        #[arg(long, value_parser = config::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Events per one-minute window.
        #[arg(long, default_value_t = 2500)]
        events_per_window: usize,
        /// Wall-clock seconds per one-minute window.
        #[arg(long, default_value_t = 1.5)]
        seconds_per_window: f64,
        /// Directory the alert emails are written to (created if missing).
        #[arg(long, default_value = config::DEFAULT_OUTBOX)]
        outbox: PathBuf,
    },
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Profile reference data (Parquet, CSV or NDJSON) into a compact, versioned artefact with a content hash.
    Build {
        /// Reference data: Parquet, CSV or NDJSON.
        #[arg(long)]
        reference: PathBuf,
        /// Where to write the artefact (a Parquet file with driftwatch metadata).
        #[arg(long)]
        output: PathBuf,
        /// SQL query over the table `reference` selecting the rows and columns to profile.
        #[arg(long)]
        filter: Option<String>,
        #[command(flatten)]
        features: FeatureArgs,
        /// Values kept per feature before the sample becomes a uniform reservoir.
        #[arg(long, default_value_t = driftwatch::profile::DEFAULT_MAX_SAMPLES)]
        max_samples: usize,
        /// Distinct categories kept per feature; the rest count as __other__.
        #[arg(long, default_value_t = driftwatch::profile::DEFAULT_MAX_CATEGORIES)]
        max_categories: usize,
    },
}

/// Which columns are features, and their types.
#[derive(Args, Clone, Default)]
struct FeatureArgs {
    /// Only these columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// Never these columns, e.g. ids and timestamps (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// Treat these columns as numerical (comma-separated), overriding the inferred type.
    #[arg(long, value_delimiter = ',')]
    numerical: Vec<String>,
    /// Treat these columns as categorical (comma-separated), e.g. integer class labels.
    #[arg(long, value_delimiter = ',')]
    categorical: Vec<String>,
    /// Bins for binned tests (psi, kl, hellinger, jensenshannon) on numerical features: edges at reference quantiles.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=1000))]
    bins: Option<u32>,
}

impl FeatureArgs {
    fn selection(&self) -> Result<FeatureSelection, String> {
        let mut declared = BTreeMap::new();
        for c in &self.numerical {
            declared.insert(c.clone(), FeatureKind::Numerical);
        }
        for c in &self.categorical {
            if declared.insert(c.clone(), FeatureKind::Categorical).is_some() {
                return Err(format!("column \"{c}\" is given both --numerical and --categorical"));
            }
        }
        Ok(FeatureSelection { columns: self.columns.clone(), exclude: self.exclude.clone(), declared })
    }
}

#[derive(Args)]
struct CheckArgs {
    /// Reference data (Parquet, CSV, NDJSON) or a baseline artefact. Zero-config form; with --config it replaces the model's baseline.
    #[arg(long, required_unless_present = "config")]
    reference: Option<PathBuf>,
    /// The batch to check: Parquet, CSV or NDJSON.
    #[arg(long)]
    current: PathBuf,
    /// Agent configuration file (configured form; needs --model).
    #[arg(long, requires = "model")]
    config: Option<PathBuf>,
    /// Model id in the configuration.
    #[arg(long, requires = "config")]
    model: Option<String>,
    #[command(flatten)]
    features: FeatureArgs,
    /// Tests to run (repeatable or comma-separated): auto, ks, wasserstein, psi, jensenshannon, kl, hellinger,
    /// chisquare, tvd, ztest, anderson, cvm, mannwhitney, ttest, energy. Each runs on the features whose type it fits.
    #[arg(long = "test", value_delimiter = ',')]
    tests: Vec<String>,
    /// Threshold for a test, as TEST=VALUE (repeatable), e.g. --threshold psi=0.25 --threshold ks=0.01.
    #[arg(long = "threshold", value_delimiter = ',')]
    thresholds: Vec<String>,
    /// Share of drifted features at or above which the data set counts as drifted.
    #[arg(long, default_value_t = 0.5)]
    drift_share: f64,
    /// Control the false-discovery rate at Q across all features' p-values (Benjamini–Hochberg).
    #[arg(long, value_name = "Q")]
    fdr: Option<f64>,
    /// How the KS p-value is computed: exact up to 10 000 values per side (auto), always exact, or asymptotic.
    #[arg(long, value_enum, default_value_t = KsMethodArg::Auto)]
    ks_method: KsMethodArg,
    /// Output format. The JSON shape is a stable contract for pipelines.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Write the report here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Ground truth column (0/1 for classification). When the current data has it, the report's
    /// `performance` object holds realised metrics; when only the reference has it, CBPE estimates
    /// from --score-column (calibrated on the reference).
    #[arg(long, value_name = "COLUMN")]
    label_column: Option<String>,
    /// Score column: the model's probability of class 1 (roc_auc, log_loss, brier, estimates).
    #[arg(long, value_name = "COLUMN", requires = "label_column")]
    score_column: Option<String>,
    /// Predicted class (classification; default: score >= --decision-threshold) or predicted value (regression).
    #[arg(long, value_name = "COLUMN", requires = "label_column")]
    prediction_column: Option<String>,
    /// Score at or above which the predicted class is 1, when there is no --prediction-column.
    #[arg(long, default_value_t = 0.5)]
    decision_threshold: f64,
    /// classification (accuracy, precision, recall, f1, roc_auc, log_loss, brier) or regression (mae, rmse, mape, r2).
    #[arg(long, value_enum, default_value_t = TaskArg::Classification)]
    task: TaskArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum TaskArg {
    Classification,
    Regression,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// Aligned text for people (colour on a terminal).
    Table,
    /// The report contract for pipelines.
    Json,
    /// One self-contained page (summary, sortable feature table, distribution plots, quality,
    /// performance), e.g. a CI artefact.
    Html,
}

#[derive(Clone, Copy, ValueEnum)]
enum KsMethodArg {
    Auto,
    Exact,
    Asymp,
}

/// An error with the exit code it maps to.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The agent reports its windows at info; one-shot commands only warn.
    let default_level = if matches!(cli.command, Command::Run { .. }) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG").unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("driftwatch: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure(message)) => {
            eprintln!("driftwatch: {message}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Check(args) => run_check(args).await,
        Command::Validate { config, no_baselines } => {
            let (cfg, problems) = validate::validate(&config, !no_baselines).await;
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                eprintln!("{}: {} problem(s)", config.display(), problems.len());
                return Ok(2);
            }
            let models = cfg.as_ref().map_or(0, |c| c.models.len());
            let rules: usize = cfg.as_ref().map_or(0, |c| c.models.iter().map(|m| m.rules.len()).sum());
            let what = if no_baselines { "" } else { ", baselines checked" };
            println!("{}: valid ({models} model(s), {rules} alert rule(s){what})", config.display());
            Ok(0)
        }
        Command::Run { config: path, listen } => {
            let cfg = match config::load(&path) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Err(Failure(format!(
                        "{}: invalid configuration ({} problem(s))",
                        path.display(),
                        errors.0.len()
                    )));
                }
            };
            let options = driftwatch::run::RunOptions { listen, ..Default::default() };
            driftwatch::run::run(&cfg, options).await.map_err(|e| Failure(format!("{e:#}")))?;
            Ok(0)
        }
        Command::Demo { listen, duration, events_per_window, seconds_per_window, outbox } => {
            use driftwatch::demo;
            let files = demo::DemoFiles::write()?;
            let cfg = config::load(&files.config)?;
            let demo_options = demo::DemoOptions { events_per_window, seconds_per_window: seconds_per_window.max(0.0) };
            println!(
                "driftwatch demo: model \"credit-risk\", one-minute windows of {events_per_window} events every {seconds_per_window} s"
            );
            println!(
                "metrics on http://{listen}/metrics, status on http://{listen}/api/v1/status, the last window's report on \
                 http://{listen}/report/credit-risk; Ctrl-C stops{}",
                duration.map_or(String::new(), |d| format!(" (or after {d:?})"))
            );
            let outbox = std::path::absolute(&outbox).unwrap_or(outbox);
            println!("alert emails are written to {} (one .eml file per digest)", outbox.display());
            let options = driftwatch::run::RunOptions {
                listen: Some(listen),
                duration,
                observers: vec![Box::new(demo::summary(demo::colour()))],
                generator: Some(Box::new(move |tx, stop| demo::generate(demo_options, tx, stop))),
                outbox: Some(outbox.clone()),
                ..Default::default()
            };
            driftwatch::run::run(&cfg, options).await.map_err(|e| Failure(format!("{e:#}")))?;
            let mails = std::fs::read_dir(&outbox)
                .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count())
                .unwrap_or(0);
            println!("{mails} alert email(s) in {}", outbox.display());
            Ok(0)
        }
        Command::Baseline(BaselineCommand::Build {
            reference,
            output,
            filter,
            features,
            max_samples,
            max_categories,
        }) => {
            let selection = features.selection()?;
            let format = Format::detect(&reference)?;
            if format == Format::Artefact {
                return Err(Failure(format!("{}: is already a baseline artefact", reference.display())));
            }
            let options = BuildOptions {
                bins: features.bins.map_or(driftwatch::profile::DEFAULT_BINS, |b| b as usize),
                max_samples: max_samples.max(1),
                max_categories: max_categories.max(1),
            };
            let baseline = Baseline::build(&reference, format, filter.as_deref(), &selection, options).await?;
            let sha = baseline.write_artefact(&output)?;
            let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
            println!(
                "{}: {} rows, {} features, {} bytes, sha256 {sha}",
                output.display(),
                baseline.profile.rows(),
                baseline.spec.features.len(),
                size
            );
            Ok(0)
        }
    }
}

async fn run_check(args: CheckArgs) -> Result<u8, Failure> {
    let mut plan = match (&args.config, &args.model) {
        (Some(path), Some(id)) => {
            let cfg = config::load(path)?;
            let model = cfg.model(id).ok_or_else(|| {
                let ids: Vec<&str> = cfg.models.iter().map(|m| m.id.as_str()).collect();
                let hint = driftwatch::text::did_you_mean(id, ids.iter().copied())
                    .map(|s| format!("did you mean \"{s}\"?"))
                    .unwrap_or_else(|| format!("models are: {}", ids.join(", ")));
                Failure(format!("{}: no model \"{id}\"; {hint}", path.display()))
            })?;
            let mut plan = Plan::from_model(model);
            // [model.performance]: realised metrics when the batch has the labels, else estimates.
            plan.performance = model.performance.as_ref().map(PerformanceSpec::from_model);
            plan.selection.columns.extend(args.features.columns.iter().cloned());
            plan.selection.exclude.extend(args.features.exclude.iter().cloned());
            plan.selection.declared.extend(args.features.selection()?.declared);
            (plan, Some(model.baseline.clone()))
        }
        _ => (zero_config_plan(&args)?, None),
    };
    apply_overrides(&mut plan.0, &args)?;
    if let Some(label) = &args.label_column {
        if args.score_column.is_none() && args.prediction_column.is_none() {
            return Err(Failure(
                "--label-column needs --score-column or --prediction-column (the model's output)".into(),
            ));
        }
        plan.0.performance = Some(PerformanceSpec {
            task: match args.task {
                TaskArg::Classification => Task::Classification,
                TaskArg::Regression => Task::Regression,
            },
            label: label.clone(),
            score: args.score_column.clone(),
            prediction: args.prediction_column.clone(),
            threshold: args.decision_threshold,
        });
        // The label, score and prediction are outputs, not inputs: never drift features.
        for c in [Some(label), args.score_column.as_ref(), args.prediction_column.as_ref()].into_iter().flatten() {
            if !plan.0.selection.exclude.contains(c) {
                plan.0.selection.exclude.push(c.clone());
            }
        }
    }
    let (plan, configured_reference) = plan;
    let reference =
        args.reference.clone().or(configured_reference).ok_or_else(|| Failure("--reference is required".into()))?;
    let report = check::run(&reference, &args.current, &plan).await?;
    let text = match args.format {
        OutputFormat::Json => check::to_json(&report) + "\n",
        OutputFormat::Html => driftwatch::html::render(&report, ""),
        OutputFormat::Table => {
            let colour =
                args.output.is_none() && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            check::to_table(&report, colour)
        }
    };
    for note in &report.notes {
        eprintln!("driftwatch: note: {note}");
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| Failure(format!("{}: cannot write: {e}", path.display())))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = out.write_all(text.as_bytes());
        }
    }
    Ok(report.exit_code() as u8)
}

fn zero_config_plan(args: &CheckArgs) -> Result<Plan, Failure> {
    let name = args
        .reference
        .as_deref()
        .and_then(Path::file_stem)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "reference".into());
    Ok(Plan::zero_config(name, args.features.selection()?))
}

/// Command-line options that replace the plan's (both forms).
fn apply_overrides(plan: &mut Plan, args: &CheckArgs) -> Result<(), Failure> {
    if !args.tests.is_empty() {
        plan.tests = args
            .tests
            .iter()
            .map(|t| {
                TestChoice::parse(t.trim()).ok_or_else(|| {
                    let names = TestChoice::names();
                    let hint = driftwatch::text::did_you_mean(t, names.iter().copied())
                        .map(|s| format!("did you mean \"{s}\"?"))
                        .unwrap_or_else(|| format!("valid tests: {}", names.join(", ")));
                    Failure(format!("--test {t}: unknown test; {hint}"))
                })
            })
            .collect::<Result<_, _>>()?;
        // Tests named on the command line replace per-feature lists too.
        for (tests, _) in plan.per_feature.values_mut() {
            *tests = None;
        }
    }
    for spec in &args.thresholds {
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| Failure(format!("--threshold {spec}: expected TEST=VALUE, e.g. psi=0.2")))?;
        let test = TestKind::parse(name.trim()).ok_or_else(|| {
            let names: Vec<&str> = TestKind::ALL.iter().map(|t| t.name()).collect();
            let hint = driftwatch::text::did_you_mean(name, names.iter().copied())
                .map(|s| format!("did you mean \"{s}\"?"))
                .unwrap_or_else(|| format!("valid tests: {}", names.join(", ")));
            Failure(format!("--threshold {spec}: unknown test \"{name}\"; {hint}"))
        })?;
        let value: f64 =
            value.trim().parse().map_err(|_| Failure(format!("--threshold {spec}: \"{value}\" is not a number")))?;
        let ok = if test.uses_p_value() { value > 0.0 && value < 1.0 } else { value.is_finite() && value > 0.0 };
        if !ok {
            return Err(Failure(format!(
                "--threshold {spec}: {test} needs {}",
                if test.uses_p_value() { "a p-value threshold in (0, 1)" } else { "a positive distance" }
            )));
        }
        plan.options.thresholds.insert(test, value);
        for (_, options) in plan.per_feature.values_mut() {
            options.thresholds.insert(test, value);
        }
    }
    if !(args.drift_share > 0.0 && args.drift_share <= 1.0) {
        return Err(Failure(format!("--drift-share {}: must be in (0, 1]", args.drift_share)));
    }
    if args.config.is_none() || args.drift_share != 0.5 {
        plan.drift_share = args.drift_share;
    }
    if let Some(q) = args.fdr {
        if !(q > 0.0 && q < 1.0) {
            return Err(Failure(format!("--fdr {q}: must be in (0, 1)")));
        }
        plan.fdr = Some(q);
    }
    let method = match args.ks_method {
        KsMethodArg::Auto => KsMethod::Auto,
        KsMethodArg::Exact => KsMethod::Exact,
        KsMethodArg::Asymp => KsMethod::Asymp,
    };
    if args.config.is_none() || method != KsMethod::Auto {
        plan.options.ks_method = method;
        for (_, options) in plan.per_feature.values_mut() {
            options.ks_method = method;
        }
    }
    if let Some(b) = args.features.bins {
        plan.build.bins = b as usize;
        plan.bins_explicit = true;
    }
    Ok(())
}
