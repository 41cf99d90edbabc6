// The Android library of the async-offers SDK: `:lib` packages the Kotlin layer and the generated
// bindings from `../bindings/kotlin` with `libasync_offers.so` for three ABIs (`build-jnilibs.sh`).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "async-offers-android"
include(":lib")
